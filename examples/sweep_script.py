"""A sweep from a script: gradient flow on a grid of init scales and widths, on all local cores.

A :class:`pgflow.analysis.sweeps.Sweep` is a base run configuration, a grid over its fields and a
number of replicates per grid cell; :func:`~pgflow.analysis.sweeps.run_sweep` runs every run not yet
stored under the output folder (one checksummed JSON file per run), in worker processes, and returns
the :class:`~pgflow.analysis.sweeps.Table` (also written as ``OUT/table.csv``). The script then
calls it a second time, as a restarted sweep would: every run is read back, none is computed.

Why ``if __name__ == "__main__":``
    The worker processes are started with the "forkserver" or "spawn" method: each starts a fresh
    Python that imports this file again, under the name ``__mp_main__``, to find what it must run.
    Everything at the top level of the file runs again in every worker. If the call to
    ``run_sweep`` sat at the top level, every worker would start a sweep of its own; under the
    guard it runs only in the process you started. ``run_sweep`` recognizes an unguarded call from
    a script and raises ``MainGuardError`` saying so, instead of starting workers. (In a notebook
    or with ``executor="serial"`` the guard is not needed.)

Run::

    python examples/sweep_script.py [--out DIR]            # 4 scales × 3 widths × 3 replicates
    python examples/sweep_script.py --small [--out DIR]    # what the test suite runs: 2 × 2 × 2
"""

import sys

from pgflow.analysis.sweeps import Sweep, phase_diagram, run_sweep

SMALL = "--small" in sys.argv[1:]  # tests/test_examples.py runs every example with --small


def make_sweep() -> Sweep:
    """Gradient flow on 20×20 (small: 8×6) rank-2 factorizations: recovery against init scale and width."""
    size = {"m": 8, "n": 6, "t_end": 40.0} if SMALL else {"m": 20, "n": 20, "t_end": 60.0}
    grid = ({"scale": [1e-3, 0.3], "width": [2, 4]} if SMALL else
            {"scale": [1e-4, 1e-3, 1e-2, 0.3], "width": [2, 4, 8]})
    return Sweep(base={**size, "rank": 2, "condition": 2.0, "dynamics": "gf", "rtol": 1e-8},
                 grid=grid, replicates=2 if SMALL else 3,
                 reductions=("recovery_error", "time_to_eps", "nfev"), seed=0)


def main(out: str) -> None:
    sweep = make_sweep()
    table = run_sweep(sweep, out, workers=2)  # "processes" executor: the guard below is required
    print(f"{len(table)} runs: {table.computed} computed, {table.reused} read back from {out}/runs/")
    print(table.csv(timing=False))
    scales, widths, error = phase_diagram(table, "scale", "width", "recovery_error")
    print("median recovery error ‖UVᵀ − Σ‖_F/‖Σ‖_F (rows: width, columns: scale)")
    print("width  " + "  ".join(f"{s:>8g}" for s in scales))
    for width, row in zip(widths, error):
        print(f"{int(width):5d}  " + "  ".join(f"{v:8.1e}" for v in row))
    assert table.column("status").tolist() == ["ok"] * len(table)
    # width 2 = rank 2: every start converges to Σ by t_end. Wider factors converge more slowly
    # (their extra columns decay only at a rate set by how small they are), as the table shows.
    assert (error[list(widths).index(2)] < 1e-6).all(), error

    again = run_sweep(sweep, out, workers=2)  # a second call (or a killed sweep's restart) reuses every run
    print(f"run again: {again.computed} computed, {again.reused} reused")
    assert (again.computed, again.reused) == (0, len(table))
    assert again.csv(timing=False) == table.csv(timing=False)
    print("OK: the sweep ran on worker processes and resumed from its stored runs")


if __name__ == "__main__":
    out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else "sweep-output"
    main(out)
