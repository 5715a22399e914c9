"""Run every benchmark: ``python -m benchmarks`` (about 5 minutes on 2 cores).

Each script times pgflow against a baseline in the same run and prints ratios; absolute times on a
shared machine mean little.
"""

import importlib
import sys
import time

SCRIPTS = ["factored_gradient", "formula", "euler", "plain_solve_ivp", "stiff", "batch", "large", "auto_method",
           "accuracy", "blas_threads", "gd_overhead", "sweep_throughput", "scale", "frameworks"]

if __name__ == "__main__":
    chosen = sys.argv[1:] or SCRIPTS
    for name in chosen:
        if name not in SCRIPTS:
            raise SystemExit(f"unknown benchmark {name!r}; choose from {SCRIPTS}")
    for name in chosen:
        print(f"\n== benchmarks/{name}.py", flush=True)
        start = time.perf_counter()
        importlib.import_module(f"benchmarks.{name}").main()
        print(f"({time.perf_counter() - start:.0f} s)", flush=True)
