"""The analysis layer's results as tidy data: sweep tables (pandas and xarray), claim reports and
discretization reports as pandas DataFrames."""

import sys

import numpy as np
import pytest

from pgflow.analysis.bounds import Claim, Run, check
from pgflow.analysis.discretization_report import COLUMNS, discretization_report
from pgflow.analysis.sweeps import Sweep, phase_diagram, run_sweep
from pgflow.flows import GradientFlow, MatrixFactorization, init, integrate

pd = pytest.importorskip("pandas")
xr = pytest.importorskip("xarray")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A 2 (scale, in descending order) × 3 (width) grid, 3 replicates, serially."""
    sweep = Sweep(base={"m": 6, "n": 5, "rank": 2, "t_end": 10.0}, grid={"scale": [0.1, 1e-3], "width": [2, 3, 4]},
                  replicates=3, reductions=("recovery_error", "nfev"))
    return run_sweep(sweep, tmp_path_factory.mktemp("sweep"), executor="serial")


def test_table_to_pandas_is_the_table(table):
    frame = table.to_pandas()
    assert list(frame.columns) == list(table.columns) and len(frame) == len(table) == 18
    np.testing.assert_array_equal(frame["recovery_error"].to_numpy(), table.column("recovery_error"))


def test_the_pivots_give_the_medians_of_the_phase_diagram(table):
    xs, ys, Z = phase_diagram(table, "scale", "width", "recovery_error")
    assert xs.tolist() == [0.1, 1e-3] and ys.tolist() == [2, 3, 4]  # grid order, not sorted
    ds = table.to_xarray()
    assert dict(ds.sizes) == {"scale": 2, "width": 3, "replicate": 3}
    assert ds["scale"].values.tolist() == [0.1, 1e-3]
    np.testing.assert_array_equal(ds["recovery_error"].median("replicate").transpose("width", "scale").values, Z)
    pivot = table.to_pandas().groupby(["width", "scale"])["recovery_error"].median().unstack()
    np.testing.assert_array_equal(pivot.loc[ys, xs].to_numpy(), Z)
    # the cells are the runs: run numbers and seeds stay integers, text stays text
    assert ds["run"].dtype == np.int64 and ds["run"].values.ravel().tolist() == list(range(18))
    assert set(ds["status"].values.ravel()) == {"ok"}


def test_a_zipped_axis_is_one_dim_with_its_other_fields_as_coordinates(tmp_path):
    sweep = Sweep(base={"rank": 2, "width": 2, "t_end": 5.0}, zipped=[{"m": [6, 8], "n": [5, 7]}],
                  grid={"scale": [0.1, 0.01]}, replicates=2, reductions=("final_loss",))
    ds = run_sweep(sweep, tmp_path, executor="serial").to_xarray()
    assert dict(ds.sizes) == {"m": 2, "scale": 2, "replicate": 2}
    assert ds["n"].dims == ("m",) and ds["n"].values.tolist() == [5, 7]


@pytest.fixture(scope="module")
def flow_run():
    p = MatrixFactorization.random(m=6, n=5, rank=2, width=2, seed=0)
    flow = GradientFlow(p)
    return Run.of(integrate(flow, init.gaussian(p, 0.1, seed=1), 5.0, t_eval=np.linspace(0.0, 5.0, 11)), flow)


def test_a_claim_report_loads_in_pandas(flow_run):
    report = check(Claim("derivative(loss) <= 0"), flow_run)
    frame = report.to_pandas()
    assert list(frame.columns) == ["claim", "run", "time", "lhs", "rhs", "slack", "holds", "nonsmooth"]
    assert len(frame) == report.n_states == 11 and frame["holds"].all()
    assert frame["slack"].min() == report.min_slack


def test_a_violated_claim_shows_where_in_the_frame(flow_run):
    report = check(Claim("derivative(loss) >= 0"), flow_run)  # false: the loss decreases
    frame = report.to_pandas()
    assert not frame["holds"].all()
    assert frame.loc[~frame["holds"], "time"].min() == report.first_violation.time == 0.0


def test_a_discretization_report_is_one_frame_of_all_its_studies():
    p = MatrixFactorization.random(m=5, n=4, rank=2, width=2, seed=0)
    report = discretization_report(p, init.gaussian(p, 0.1, seed=1), step_sizes=[0.04, 0.02, 0.01], t_end=2.0)
    frame = report.to_pandas()
    assert list(frame.columns) == list(COLUMNS) and len(frame) == 6
    assert sorted(set(zip(frame["variant"], frame["against"]))) == [("simultaneous", "flow"),
                                                                     ("simultaneous", "modified")]
    study = report.studies[("simultaneous", "modified")]
    rows = frame[frame["against"] == "modified"]
    np.testing.assert_array_equal(rows["error_t_end"].to_numpy(), study.errors)
    assert (rows["order"] == study.order).all() and abs(study.order - 2) < 0.2  # second order against it


def test_without_the_data_extra_the_errors_name_it(table, flow_run, monkeypatch):
    report = check(Claim("derivative(loss) <= 0"), flow_run)
    monkeypatch.setitem(sys.modules, "xarray", None)
    monkeypatch.setitem(sys.modules, "pandas", None)
    for call in (table.to_pandas, table.to_xarray, report.to_pandas):
        with pytest.raises(ImportError, match=r"pip install 'pgflow\[data\]'"):
            call()
