"""64 seeds of case (a) as one batched solve against 64 separate solves.

The batch shares one step sequence, and a step is accepted only when every member's own error
estimate is within tolerance: it takes the steps its most demanding member needs.
"""

from __future__ import annotations

import numpy as np

from benchmarks._timing import compare, table
from pgflow.flows import GradientFlow, MatrixFactorization, init, integrate


def main(n_seeds: int = 64, t_end: float = 30.0, rtol: float = 1e-8) -> dict:
    problem = MatrixFactorization.random(m=20, n=20, rank=3, width=5, condition=10.0, seed=0)
    X0 = np.stack([init.gaussian(problem, 1e-4, seed=s) for s in range(n_seeds)])
    flow = GradientFlow(problem)
    kw = dict(method="DOP853", rtol=rtol, atol=1e-12, default_monitors=False, dense_output=False, reduce=False)
    runs = {}
    times = compare({"separate": lambda: runs.__setitem__("separate", [integrate(flow, x0, t_end, **kw) for x0 in X0]),
                     "batched": lambda: runs.__setitem__("batched", integrate(flow, X0, t_end, **kw))}, repeats=3)
    alone, batch = runs["separate"], runs["batched"]
    scale = problem.target.frobenius_norm
    gaps = [np.linalg.norm(b.final - a.final) / scale for a, b in zip(alone, batch)]
    errors = [b.stats.member_error for b in batch]
    print(f"{n_seeds} seeds of m = n = 20, k = 5, DOP853 to t = {t_end:g} at rtol {rtol:g} (median of 3, interleaved)")
    print(table([("separate", sum(a.stats.steps for a in alone), sum(a.stats.nfev for a in alone),
                  f"{times['separate']:.2f}"),
                 ("batched", batch[0].stats.steps, batch[0].stats.nfev, f"{times['batched']:.2f}")],
                ("solve", "steps", "rhs calls", "seconds")))
    print(f"largest endpoint gap batched vs separate: {max(gaps):.1e} (relative to ‖Σ‖_F); "
          f"member local-error estimates {min(errors):.2f}–{max(errors):.2f} (1 = tolerance)")
    ratio = times["separate"] / times["batched"]
    print(f"ratio separate / batched: {ratio:.1f}x")
    return {"ratio": ratio, "max_gap": max(gaps)}


if __name__ == "__main__":
    main()
