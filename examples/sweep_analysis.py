"""Analysing a sweep with pandas and xarray: the table as tidy data, pivots, and a phase diagram.

Requires the data extra: ``pip install 'pgflow[data]'`` (pandas, xarray, netCDF4).

The sweep is the matrix-sensing phase diagram of figure 6 in small: gradient flow on 8×8 factors
(width 8) recovering a rank-1 matrix X* from p < mn = 64 Gaussian measurements, from init scales α. Its :class:`Table
<pgflow.analysis.sweeps.Table>` converts to

- ``table.to_pandas()``: one row per run (tidy), so that groupby/pivot give any summary;
- ``table.to_xarray()``: the grid as dims (measurements, scale, replicate), so that a reduction over
  the replicates is ``ds.recovery_error.median("replicate")``, and the Dataset writes to netCDF.

Both give the same medians as :func:`pgflow.analysis.sweeps.phase_diagram`, which the script checks.
It runs serially (``executor="serial"``: no worker processes, so no ``__main__`` guard is needed, as
in a notebook); see ``sweep_script.py`` for local processes.

Run::

    python examples/sweep_analysis.py            # 4 × 3 cells × 3 replicates, about 10 s
    python examples/sweep_analysis.py --small    # what the test suite runs: 2 × 2 cells × 2 replicates
"""

import sys
import tempfile

import numpy as np
import pandas as pd
import xarray as xr

from pgflow.analysis.sweeps import Sweep, phase_diagram, run_sweep

SMALL = "--small" in sys.argv[1:]  # tests/test_examples.py runs every example with --small


def sensing_table(folder: str):
    """Run (or read back from ``folder``) the sensing sweep; return its Table."""
    grid = ({"n_measurements": [16, 48], "scale": [1e-4, 0.3]} if SMALL else
            {"n_measurements": [12, 24, 36, 48], "scale": [1e-4, 1e-2, 0.3]})
    sweep = Sweep(base={"problem": "sensing", "m": 8, "n": 8, "rank": 1, "width": 8, "dynamics": "gf",
                        "t_end": 200.0, "method": "DOP853", "rtol": 1e-8, "atol": 1e-12},
                  grid=grid, replicates=2 if SMALL else 3, reductions=("recovery_error", "final_loss", "nfev"))
    return run_sweep(sweep, folder, executor="serial")


def main():
    with tempfile.TemporaryDirectory() as folder:
        table = sensing_table(folder)

        # pandas: tidy rows, one per run
        frame = table.to_pandas()
        print(frame[["n_measurements", "scale", "replicate", "recovery_error", "nfev"]].to_string(index=False))
        medians = frame.pivot_table(index="scale", columns="n_measurements", values="recovery_error",
                                    aggfunc="median")
        print("\nmedian recovery error (pandas pivot_table):")
        print(medians.to_string(float_format=lambda v: f"{v:.1e}"))
        cost = frame.groupby("scale")["nfev"].agg(["mean", "max"])
        print("\nright-hand-side evaluations by init scale:")
        print(cost.to_string())

        # xarray: the grid as dims
        ds = table.to_xarray()
        print("\n", ds, sep="")
        by_cell = ds["recovery_error"].median("replicate")
        ds.to_netcdf(f"{folder}/table.nc")  # the whole table, self-describing, for other tools
        with xr.open_dataset(f"{folder}/table.nc") as back:
            np.testing.assert_array_equal(back["recovery_error"].values, ds["recovery_error"].values)

        # the same numbers as phase_diagram (its Z is (y, x): scale by measurements)
        xs, ys, Z = phase_diagram(table, "n_measurements", "scale", "recovery_error")
        np.testing.assert_array_equal(by_cell.transpose("scale", "n_measurements").values, Z)
        np.testing.assert_array_equal(medians.loc[ys, xs].to_numpy(), Z)
        assert isinstance(medians, pd.DataFrame)
        # the finding: with p = 48 < mn = 64 measurements a small start recovers X*, a large one does not
        small_start, large_start = Z[0, -1], Z[-1, -1]
        print(f"\nwith p = {xs[-1]:g} measurements: error {small_start:.1e} from α = {ys[0]:g}, "
              f"{large_start:.1e} from α = {ys[-1]:g}")
        assert small_start < 1e-2 < large_start
        print("OK: pandas, xarray and phase_diagram agree")


if __name__ == "__main__":
    main()
