"""Run every benchmark: ``python -m benchmarks``."""

import importlib

SCRIPTS = ["factored_gradient"]

for name in SCRIPTS:
    print(f"\n== benchmarks/{name}.py")
    importlib.import_module(f"benchmarks.{name}").main()
