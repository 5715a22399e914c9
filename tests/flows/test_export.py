"""Trajectories as tidy data: to_xarray, to_pandas, and netCDF files that load back to the same trajectory."""

import json
import sys

import numpy as np
import pytest

from pgflow.flows import (GradientFlow, MatrixFactorization, SymmetricFactorization, Trajectory, emergence_events,
                          export, gradient_descent, init, integrate)

xr = pytest.importorskip("xarray")
pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def runs():
    """A GF run (events, error estimate), a GD run and a member of a batch, of one 6×5, width-3 problem."""
    p = MatrixFactorization.random(m=6, n=5, rank=2, width=3, seed=0)
    x0 = init.gaussian(p, 0.01, seed=1)
    gf = integrate(GradientFlow(p), x0, 10.0, t_eval=np.linspace(0.0, 10.0, 21), error_estimate=True,
                   events=emergence_events(p))
    gd = gradient_descent(p, x0, 0.05, 200, save_every=10)
    batch = integrate(GradientFlow(p), np.stack([init.gaussian(p, 0.01, seed=s) for s in range(3)]), 5.0,
                      t_eval=np.linspace(0.0, 5.0, 11))
    return p, {"gf": gf, "gd": gd, "member": batch[1]}


def assert_same(back: Trajectory, run: Trajectory):
    np.testing.assert_array_equal(back.t, run.t)
    np.testing.assert_array_equal(back.x, run.x)
    assert back.layout == run.layout
    assert back.monitors.keys() == run.monitors.keys()
    for name in run.monitors:
        np.testing.assert_array_equal(back.monitors[name], run.monitors[name])
    assert back.meta == json.loads(json.dumps(run.meta))
    assert back.dynamics == run.dynamics and back.stats == run.stats
    assert dict(back.events) == dict(run.events)
    assert back.event_states.keys() == run.event_states.keys()
    for name in run.event_states:
        np.testing.assert_array_equal(back.event_states[name], run.event_states[name])
    assert (back.accuracy is None) == (run.accuracy is None)
    if run.accuracy is not None:
        np.testing.assert_array_equal(back.accuracy.estimate, run.accuracy.estimate)
        assert back.accuracy.how == run.accuracy.how
    assert json.loads(json.dumps(back.record())) == json.loads(json.dumps(run.record()))


@pytest.mark.parametrize("which", ["gf", "gd", "member"])
def test_netcdf_round_trips_a_trajectory(tmp_path, runs, which):
    _, run = runs
    path = run[which].save(tmp_path / f"{which}.nc")
    assert path.endswith(f"{which}.nc") and [p.name for p in tmp_path.iterdir()] == [f"{which}.nc"]
    assert_same(Trajectory.load(path), run[which])


@pytest.mark.parametrize("which", ["gf", "gd", "member"])
def test_the_dataset_written_by_xarray_itself_loads_too(tmp_path, runs, which):
    _, run = runs
    run[which].to_xarray().to_netcdf(tmp_path / "run.nc")
    assert_same(Trajectory.load(tmp_path / "run.nc"), run[which])
    with xr.open_dataset(tmp_path / "run.nc") as ds:
        xr.testing.assert_identical(ds.load(), run[which].to_xarray())


def test_the_dataset_has_factor_dims_monitors_and_json_attributes(runs):
    p, run = runs
    gf, gd = run["gf"], run["gd"]
    ds = gf.to_xarray()
    assert ds["U"].dims == ("time", "row", "rank") and ds["U"].shape == (21, 6, 3)
    assert ds["V"].dims == ("time", "col", "rank") and ds["V"].shape == (21, 5, 3)
    np.testing.assert_array_equal(ds["U"].values, gf.U)
    np.testing.assert_array_equal(ds["V"].values, gf.V)
    np.testing.assert_array_equal(ds["time"].values, gf.t)
    np.testing.assert_array_equal(ds["loss"].values, gf.monitors["loss"])
    assert ds["singular_values"].dims == ("time", "singular_values_index")
    np.testing.assert_array_equal(ds["error_estimate"].values, gf.accuracy.estimate)
    # every attribute is a string or a number (netCDF's types), the records are JSON
    assert all(isinstance(v, (str, int, float)) for v in ds.attrs.values())
    assert json.loads(ds.attrs["dynamics"])["kind"] == "gf" and ds.attrs["dynamics_kind"] == "gf"
    assert json.loads(ds.attrs["stats"])["nfev"] == gf.stats.nfev
    assert json.loads(ds.attrs["meta"]) == json.loads(json.dumps(gf.meta))
    assert set(json.loads(ds.attrs["events"])) == set(gf.events) and len(gf.events) == 2
    assert json.loads(gd.to_xarray().attrs["dynamics"])["step_size"] == 0.05


def test_a_state_without_factors_is_one_variable_over_time_and_state(tmp_path):
    def decay(t, y):
        return -np.array([1.0, 2.0, 3.0]) * y

    run = integrate(decay, [1.0, 1.0, 1.0], 2.0, t_eval=[0.0, 1.0, 2.0], rtol=1e-10, atol=1e-12)
    ds = run.to_xarray()
    assert ds["y"].dims == ("time", "state") and ds["y"].shape == (3, 3)
    np.testing.assert_allclose(ds["y"].sel(time=2.0).values, np.exp(-2.0 * np.array([1.0, 2.0, 3.0])), rtol=1e-8)
    assert_same(Trajectory.load(run.save(tmp_path / "ode.nc")), run)


def test_a_symmetric_problem_has_one_factor_over_row_and_rank(tmp_path):
    p = SymmetricFactorization.random(m=5, rank=2, width=2, seed=0)
    run = integrate(GradientFlow(p), init.gaussian(p, 0.1, seed=1), 1.0, t_eval=[0.0, 0.5, 1.0])
    ds = run.to_xarray()
    (name,) = [n for n, _ in run.layout]
    assert ds[name].dims == ("time", "row", "rank") and ds[name].shape == (3, 5, 2)
    assert_same(Trajectory.load(run.save(tmp_path / "sym.nc")), run)


def test_to_pandas_gives_the_monitors_by_time(runs):
    _, run = runs
    gf = run["gf"]
    frame = gf.to_pandas()
    assert frame.index.name == "time" and len(frame) == 21
    np.testing.assert_array_equal(frame.index.values, gf.t)
    np.testing.assert_array_equal(frame["loss"].values, gf.monitors["loss"])
    q = gf.monitors["singular_values"].shape[1]
    assert [f"singular_values_{i}" for i in range(q)] == [c for c in frame.columns if c.startswith("singular")]
    np.testing.assert_array_equal(frame[f"singular_values_{q - 1}"].values, gf.monitors["singular_values"][:, -1])
    np.testing.assert_array_equal(frame["error_estimate"].values, gf.accuracy.estimate)
    assert frame.attrs["dynamics"]["kind"] == "gf"
    # a monitor is decreasing along gradient flow: the frame says so too
    assert frame["loss"].is_monotonic_decreasing


def test_npz_stays_the_default(tmp_path, runs):
    _, run = runs
    assert run["gd"].save(tmp_path / "run").endswith("run.npz")
    assert_same(Trajectory.load(tmp_path / "run.npz"), run["gd"])


def test_a_complex_state_cannot_go_to_netcdf(tmp_path):
    run = integrate(lambda t, y: 1j * y, np.array([1.0 + 0j]), 1.0, method="RK45")
    with pytest.raises(TypeError, match="netCDF has no complex numbers.*npz"):
        run.save(tmp_path / "c.nc")
    assert not list(tmp_path.iterdir())


def test_a_foreign_dataset_is_refused(tmp_path):
    xr.Dataset({"a": ("time", [1.0, 2.0])}).to_netcdf(tmp_path / "other.nc")
    with pytest.raises(ValueError, match="not a pgflow trajectory"):
        Trajectory.load(tmp_path / "other.nc")


def test_without_the_data_extra_the_error_names_it(runs, monkeypatch, tmp_path):
    _, run = runs
    monkeypatch.setitem(sys.modules, "xarray", None)  # import xarray now raises ImportError
    monkeypatch.setitem(sys.modules, "pandas", None)
    for call in (run["gf"].to_xarray, run["gf"].to_pandas, lambda: run["gf"].save(tmp_path / "x.nc")):
        with pytest.raises(ImportError, match=r"needs (xarray|pandas).*pip install 'pgflow\[data\]'"):
            call()
    assert export.require("json", "test") is json
