"""Sweep throughput: local processes on every core against the serial executor, on one CPU-bound sweep.

Each run integrates case (a)-like gradient flow (m = n = 30, k = 5, κ = 10, α = 10⁻⁴) to t = 100 with
DOP853 at rtol 10⁻¹⁰: about 5,500 right-hand sides, 0.1 s on an idle core. The processes' time
includes starting the pool (the first repeat also starts the forkserver), so the sweep is long
enough (about 10 s serial) for that to be a small part. Executors alternate, each into a fresh
folder (nothing is reused), and the best of ``repeats`` counts, so that machine noise hits both
alike. The tables must agree number for number.
"""

from __future__ import annotations

import tempfile
import time

from pgflow.analysis.sweeps import Sweep, run_sweep
from benchmarks._timing import table


def main(n_runs: int = 96, workers: int = 2, repeats: int = 2) -> dict:
    sweep = Sweep(base={"m": 30, "n": 30, "rank": 3, "width": 5, "condition": 10.0, "scale": 1e-4, "t_end": 100.0,
                        "method": "DOP853", "rtol": 1e-10, "atol": 1e-14},
                  replicates=n_runs, reductions=("recovery_error", "nfev"))
    options = {"serial": {"executor": "serial"}, "processes": {"executor": "processes", "workers": workers}}
    best, tables = {name: float("inf") for name in options}, {}
    for _ in range(repeats):
        for name, kwargs in options.items():
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                tables[name] = run_sweep(sweep, out, progress=False, **kwargs)
                best[name] = min(best[name], time.perf_counter() - start)
    same = tables["serial"].csv(timing=False) == tables["processes"].csv(timing=False)
    print(f"{n_runs} runs of GF on m = n = 30, k = 5 to t = 100 (DOP853, rtol 1e-10); best of {repeats}")
    print(table([(name, options[name].get("workers", 1), f"{best[name]:.2f}", f"{n_runs / best[name]:.2f}")
                 for name in options], ("executor", "workers", "seconds", "runs/s")))
    ratio = best["serial"] / best["processes"]
    print(f"tables equal number for number: {same}")
    print(f"throughput ratio processes / serial: {ratio:.2f}x")
    return {"ratio": ratio, "same": same}


if __name__ == "__main__":
    main()
