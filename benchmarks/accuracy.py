"""The cost of ``error_estimate=True``: the solve with its error estimate against the plain solve,
side by side, at m = n = 200 (case (b)) and m = n = 1000 (case (c)), DOP853 over the whole transient
on a 101-point grid (issue target: at most 2×). The estimate's reference solve is DOP853 at 32×
tighter tolerances stepping at least twice in every output interval the solve crossed in one step:
the ratio is roughly 1 + 32^(1/8) × (its share of the steps), see docs/accuracy.md.
"""

from __future__ import annotations

import numpy as np

from benchmarks._timing import compare, table
from benchmarks.cases import case
from pgflow.flows import GradientFlow, integrate


def main() -> None:
    rows = []
    for name, t_end in (("b", 6.0), ("c", 6.0)):
        problem, x0 = case(name)
        grid = np.linspace(0.0, t_end, 101)
        flow = GradientFlow(problem)
        for rtol in (1e-6, 1e-8):
            kw = dict(method="DOP853", rtol=rtol, t_eval=grid, default_monitors=False, reduce=False)  # the full state's cost
            runs = {}

            def plain():
                runs["plain"] = integrate(flow, x0, t_end, **kw)

            def estimated():
                runs["estimated"] = integrate(flow, x0, t_end, error_estimate=True, **kw)

            times = compare({"plain": plain, "estimated": estimated}, repeats=3)
            run = runs["estimated"]
            rows.append((f"({name}) m = n = {problem.m}", f"{rtol:.0e}", f"{times['plain']:.3f}",
                         f"{times['estimated']:.3f}", f"{times['estimated'] / times['plain']:.2f}",
                         f"{run.accuracy.cost:.2f}", f"{run.error_estimate.max():.1e}"))
    print(table(rows, ("case", "rtol", "plain s", "with estimate s", "time ratio", "rhs ratio", "max estimate")))


if __name__ == "__main__":
    main()
