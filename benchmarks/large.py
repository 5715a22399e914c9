"""Case (c), m = n = 1000, k = 20, r = 10: the right-hand side against the BLAS lower bound for its
flops, and the whole solve against nfev × (one right-hand side).

The right-hand side is timed as the solver calls it, written into a preallocated row
(``flow(t, x, out=row)``). The solve is timed side by side with it, and split into the time spent
inside right-hand sides and the rest: the Runge–Kutta stage sums, error estimate and controller.
That rest is memory traffic: DOP853 streams about 86 state-sized rows per step (each stage input is
a sum over the earlier stages, and the update and error estimates one more: 74 rows in all, see
``pgflow.flows.rk.InPlaceDOP853``; the error scale and copies make the rest), and at dim 40,000 a row is
320 kB, so the 13 stage rows (4.2 MB) no longer fit one core's 2 MB L2 cache. "row pass" is the
measured time to stream one such row, in a 13-row product repeated back to back (rows hot in the
L3 cache, as the solver's own stage rows are: the fastest a row can be read here). "floor" is the ratio a
stepper would reach that did nothing but
read the 74 rows DOP853's tableau needs per attempt (12 right-hand sides): 1 + attempts × 74 × row
pass / (nfev × rhs). With a right-hand side this cheap for its state size (k = 20 columns), that floor
alone is near or above 1.5 on this machine.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks._timing import compare, table
from benchmarks.cases import case
from pgflow.flows import GradientFlow, integrate
from pgflow.flows.blas import limit
from pgflow.flows.rk import combine

RHS_CALLS = 50
ROW_PASS_CALLS = 20
# rows of the state one DOP853 step streams: its 11 stage sums, and the update with the 2-row error
# estimate, over contiguous windows of the reordered stage buffer (74 rows), and about 12 passes of
# scaling the error and copying y and f
TABLEAU_ROWS = 74
ROWS_PER_STEP = TABLEAU_ROWS + 12
# right-hand sides per DOP853 attempt (stages 1-11 and f(y_new)), and before the first (f(y0) and the
# initial step selection's probe)
RHS_PER_ATTEMPT, RHS_AT_START = 12, 2


def gemm_rate(threads) -> float:
    """Flop rate of a large square matrix product: what this machine's BLAS can sustain."""
    A = np.random.default_rng(0).standard_normal((1500, 1500))
    with limit(threads):
        t = compare({"gemm": lambda: A @ A}, repeats=5)["gemm"]
    return 2 * 1500 ** 3 / t


class _Timed:
    """The flow, with the time spent in its right-hand sides added up."""

    def __init__(self, flow):
        self.flow, self.problem, self.seconds = flow, flow.problem, 0.0

    def __call__(self, t, x, out=None):
        start = time.perf_counter()
        out = self.flow(t, x, out=out)
        self.seconds += time.perf_counter() - start
        return out

    def __getattr__(self, name):
        return getattr(self.flow, name)


def main(t_end: float = 30.0, rtol: float = 1e-8) -> dict:
    problem, x0 = case("c")
    (m, k), (n, _) = problem.layout[0][1], problem.layout[1][1]
    r = problem.target.rank
    # Grams VᵀV, UᵀU; products U(VᵀV), V(UᵀU); ΨᵀV, ΦᵀU; Φ(σ⊙·), Ψ(σ⊙·): two flops per multiply-add
    flops = 2 * (n * k * k + m * k * k + m * k * k + n * k * k + n * r * k + m * r * k + m * r * k + n * r * k)
    flow = _Timed(GradientFlow(problem))
    row, rows = np.empty_like(x0), np.random.default_rng(0).standard_normal((13, x0.size))
    coef = np.random.default_rng(1).standard_normal(13)
    out, results = [], {}
    for threads in (1, None):
        runs = []

        def rhs():
            for _ in range(RHS_CALLS):
                flow(0.0, x0, out=row)

        def solve():
            flow.seconds = 0.0
            runs.append(integrate(flow, x0, t_end, rtol=rtol, atol=1e-12, default_monitors=False, dense_output=False,
                                  blas_threads=threads))
            runs[-1].meta["rhs_seconds"] = flow.seconds

        def row_passes():
            for _ in range(ROW_PASS_CALLS):
                combine(coef, rows, row)

        with limit(threads):
            times = compare({"rhs": rhs, "solve": solve, "row pass": row_passes}, repeats=5)
        run = runs[-1]
        t_rhs, t_solve, nfev = times["rhs"] / RHS_CALLS, times["solve"], run.stats.nfev
        bound = flops / gemm_rate(threads)
        label = "1 thread" if threads == 1 else "BLAS default"
        overhead = t_solve / (nfev * t_rhs)
        stepping = (t_solve - run.meta["rhs_seconds"]) / run.stats.steps
        row_pass = times["row pass"] / (ROW_PASS_CALLS * len(rows))
        attempts = (nfev - RHS_AT_START) / RHS_PER_ATTEMPT
        floor = 1 + attempts * TABLEAU_ROWS * row_pass / (nfev * t_rhs)
        out.append((label, f"{1e3 * t_rhs:.3f}", f"{1e3 * bound:.3f}", f"{t_rhs / bound:.1f}", nfev, f"{t_solve:.2f}",
                    f"{overhead:.2f}", f"{floor:.2f}", f"{1e3 * stepping:.2f}", f"{1e6 * row_pass:.0f}",
                    f"{stepping / row_pass:.0f}"))
        results[label] = {"rhs_over_bound": t_rhs / bound, "solve_over_nfev_rhs": overhead, "floor": floor}
    print(f"case (c): m = n = {m}, k = {k}, r = {r}, {flops / 1e6:.1f} Mflop per right-hand side, "
          f"DOP853 (auto) to t = {t_end:g} at rtol {rtol:g}")
    print(table(out, ("BLAS threads", "rhs ms", "flop bound ms", "rhs / bound", "nfev", "solve s",
                      "solve / (nfev × rhs)", "floor", "stepping ms/step", "row pass µs", "step / row pass")))
    print(f"stepping outside the right-hand sides streams about {ROWS_PER_STEP} rows per step")
    return results


if __name__ == "__main__":
    main()
