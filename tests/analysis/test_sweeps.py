import collections
import functools
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from pgflow.analysis.sweeps import (ATTEMPTS, FIELDS, KILLED, REDUCTIONS, TIMING_COLUMNS, Sweep, executors, load_sweep,
                                    phase_diagram, run_id, run_one, run_sweep)

TINY = {"m": 8, "n": 8, "rank": 2, "width": 2, "condition": 2.0, "t_end": 10.0}


def run_files(out):
    """Stored runs (a kill during a write may leave a hidden temporary file: not a run), each with what
    a rewrite would change: inode, size, modification and change times (not the access time: a
    sweep reads every stored run to check it)."""
    folder = os.path.join(out, "runs")
    return {name: _written(os.stat(os.path.join(folder, name))) for name in os.listdir(folder)
            if name.endswith(".json") and not name.startswith(".")}


def _written(stat):
    return stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


# --------------------------------------------------------------------------------------------------
# configurations
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"base": {"widht": 3}}, "base.widht: unknown field 'widht'"),
    ({"grid": {"sclae": [0.1]}}, "grid.sclae: unknown field 'sclae'"),
    ({"zipped": [{"m": [8], "nn": [8]}]}, "zip[0].nn: unknown field 'nn'"),
    ({"grid": {"scale": []}}, "grid.scale: an axis must be a non-empty list"),
    ({"grid": {"scale": 0.1}}, "grid.scale: an axis must be a non-empty list"),
    ({"zipped": [{"m": [8, 10, 12], "n": [8, 10]}]},
     "zip[0]: zipped fields must have the same length, got m has 3, n has 2"),
    ({"zipped": [{"m": [8, 8], "n": [9, 9]}]}, "zip[0]: repeated values"),
    ({"zipped": [{}]}, "zip[0]: a zipped axis needs at least one field"),
    ({"grid": {"m": [8, 10]}, "zipped": [{"m": [8], "n": [8]}]}, "zip[0].m: field 'm' is already set in grid.m"),
    ({"grid": {"scale": [1e-3, -1.0]}}, "grid.scale[1]: scale must be positive"),
    ({"grid": {"scale": [1e-3, 1e-3]}}, "grid.scale: repeated values"),
    ({"base": {"m": 0}}, "base.m: m must be an integer >= 1"),
    ({"base": {"dynamics": "sgd"}}, "base.dynamics: dynamics must be one of"),
    ({"base": {"rho": 0.1}}, "rho and xi0 perturb dynamics 'pgf_residual', 'pgf_additive' or 'gd', not 'gf'"),
    ({"base": {"record_every": 2}}, "'record_every' is now called 'save_every'"),
    ({"grid": {"rank": [2, 9]}}, "run 1 (rank = 9, replicate 0): rank must be <= min(m, n) = 8"),
    ({"reductions": ("recovery_error", "time_to_epsilon")}, "sweep.reductions: unknown reduction 'time_to_epsilon'"),
    ({"reductions": ()}, "sweep.reductions must be a non-empty list"),
    ({"base": {"problem_seed": 1, "init_seed": 2, "perturbation_seed": 3}, "replicates": 2},
     "run 1 (replicate 1) has the same configuration as run 0"),
])
def test_bad_configurations_raise_errors_naming_the_field(kwargs, message):
    with pytest.raises((ValueError, TypeError)) as info:
        Sweep(**kwargs)
    assert message in str(info.value)


def test_bad_toml_configurations_name_the_section_and_key(tmp_path):
    bad = {"[sweeps]\nseed = 1\n": "unknown section [sweeps]",
           "[sweep]\nrepeats = 3\n": "[sweep]: unknown key 'repeats'",
           "[zip]\nm = [8]\n": "zip must be an array of tables, written [[zip]]",
           "[[zip]]\nm = [8, 10]\nn = [8]\n": "zip[0]: zipped fields must have the same length",
           "base = 3\n": "base must be a table, written [base]",
           "[base]\nscale = -1.0\n": "base.scale: scale must be positive",
           "[grid]\nscale = [\n": "config"}
    for i, (text, message) in enumerate(bad.items()):
        path = tmp_path / f"bad{i}.toml"
        path.write_text(text)
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_sweep(path)


def test_runs_are_planned_in_grid_order_with_zipped_axes():
    sweep = Sweep(base=TINY, grid={"scale": [1e-3, 1e-2]}, zipped=[{"m": [8, 10, 12], "n": [9, 11, 13]}],
                  replicates=2)
    runs = sweep.runs()
    assert len(sweep) == 2 * 3 * 2 and sweep.axis_fields == ("scale", "m", "n")
    assert [r.key for r in runs[:3]] == [(0, 0, 0), (0, 0, 1), (0, 1, 0)]
    assert [(r.config["scale"], r.config["m"], r.config["n"]) for r in runs[::2]] == \
        [(s, m, n) for s in (1e-3, 1e-2) for m, n in ((8, 9), (10, 11), (12, 13))]
    assert len({r.run_id for r in runs}) == len(runs)


# --------------------------------------------------------------------------------------------------
# seeds: from one root through SeedSequence.spawn, keyed by grid position; a run reproduces alone
# --------------------------------------------------------------------------------------------------

def test_seeds_are_spawned_by_grid_position_recorded_and_reproduce_a_run_alone(tmp_path):
    sweep = Sweep(base=TINY, grid={"scale": [1e-3, 1e-1], "condition": [1.0, 4.0]}, replicates=2, seed=7,
                  reductions=("recovery_error", "final_loss", "nfev"))
    table = run_sweep(sweep, tmp_path, executor="serial")
    for planned, row in zip(sweep.runs(), table.rows):
        i, j, r = planned.key
        child = np.random.SeedSequence(7).spawn(2)[i].spawn(2)[j].spawn(2)[r]
        assert [row[k] for k in ("problem_seed", "init_seed", "perturbation_seed")] == child.generate_state(3).tolist()
    # one run from its stored configuration alone, bit for bit
    stored = json.loads((tmp_path / "runs" / f"{table.rows[5]['run_id']}.json").read_text())
    again = run_one(stored["config"])
    for key in ("recovery_error", "final_loss", "nfev", "status"):
        assert again[key] == table.rows[5][key]


def test_explicit_seeds_override_spawned_ones():
    sweep = Sweep(base={**TINY, "problem_seed": 11}, grid={"init_seed": [0, 1]})
    assert [(r.config["problem_seed"], r.config["init_seed"]) for r in sweep.runs()] == [(11, 0), (11, 1)]


def test_appending_axis_values_or_replicates_keeps_every_stored_run(tmp_path):
    small = Sweep(base=TINY, grid={"scale": [1e-3, 1e-2]}, reductions=("recovery_error",))
    first = run_sweep(small, tmp_path, executor="serial")
    before = run_files(tmp_path)
    grown = Sweep(base=TINY, grid={"scale": [1e-3, 1e-2, 1e-1]}, replicates=2, reductions=("recovery_error",))
    second = run_sweep(grown, tmp_path, executor="serial")
    assert (second.computed, second.reused) == (4, 2)
    assert [second.rows[i]["recovery_error"] for i in (0, 2)] == first.column("recovery_error").tolist()
    assert all(run_files(tmp_path)[name] == stat for name, stat in before.items())


# --------------------------------------------------------------------------------------------------
# storage: resumable, never stale, failures recorded
# --------------------------------------------------------------------------------------------------

def test_a_rerun_skips_finished_runs_and_a_changed_configuration_recomputes(tmp_path):
    sweep = Sweep(base=TINY, grid={"scale": [1e-3, 1e-2, 1e-1]})
    first = run_sweep(sweep, tmp_path, executor="serial")
    before = run_files(tmp_path)
    assert first.computed == 3 and len(before) == 3
    again = run_sweep(sweep, tmp_path, executor="serial")
    assert (again.computed, again.reused) == (0, 3)
    assert run_files(tmp_path) == before
    assert again.csv() == first.csv() == (tmp_path / "table.csv").read_text()
    changed = run_sweep(Sweep(base={**TINY, "rtol": 1e-9}, grid={"scale": [1e-3, 1e-2, 1e-1]}), tmp_path,
                        executor="serial")
    assert changed.computed == 3 and len(run_files(tmp_path)) == 6
    assert not set(changed.column("run_id")) & set(first.column("run_id"))


def test_a_failing_run_is_recorded_with_its_error_and_the_sweep_goes_on(tmp_path):
    sweep = Sweep(base={**TINY, "dynamics": "gd", "scale": 0.1, "save_every": 10},
                  grid={"step_size": [0.05, 2.5]}, reductions=("recovery_error", "time_to_eps", "nfev"))
    table = run_sweep(sweep, tmp_path, executor="serial")
    ok, failed = table.rows
    assert ok["status"] == "ok" and ok["error"] == "" and ok["recovery_error"] < 1e-3
    assert failed["status"] == "failed" and failed["error"].startswith("DivergenceError: gradient descent diverged")
    assert all(np.isnan(failed[c]) for c in ("recovery_error", "time_to_eps", "nfev"))
    assert table.computed == 2 and run_sweep(sweep, tmp_path, executor="serial").computed == 0


# --------------------------------------------------------------------------------------------------
# reductions
# --------------------------------------------------------------------------------------------------

def test_reductions_agree_across_gf_pgf_and_gd(tmp_path):
    reductions = ("recovery_error", "time_to_eps", "emergence_times", "nfev", "final_loss")
    sweep = Sweep(base={**TINY, "t_end": 20.0, "step_size": 0.01, "rtol": 1e-10, "atol": 1e-14, "eps": 1e-2,
                        "problem_seed": 3, "init_seed": 4},  # one problem and start for the three dynamics
                  zipped=[{"dynamics": ["gf", "gd", "pgf_residual"], "rho": [0.0, 0.0, 0.05]}], reductions=reductions)
    gf, gd, pgf = run_sweep(sweep, tmp_path, executor="serial").rows
    assert {gf["status"], gd["status"], pgf["status"]} == {"ok"}
    # GD with η = 0.01 is within O(η) of its flow: times agree to a few percent
    assert gd["time_to_eps"] == pytest.approx(gf["time_to_eps"], rel=0.05)
    for i in (1, 2):
        assert gd[f"emergence_{i}"] == pytest.approx(gf[f"emergence_{i}"], rel=0.05)
        assert gf[f"emergence_{i}_predicted"] == gd[f"emergence_{i}_predicted"]
        assert gf[f"emergence_{i}"] == pytest.approx(gf[f"emergence_{i}_predicted"], rel=0.2)
    assert gd["nfev"] == 2000 and gf["recovery_error"] < 1e-6 and pgf["recovery_error"] < 1e-3
    assert 0 < gf["time_to_eps"] < 20.0


def test_order_reduction_fits_first_order_against_the_flow(tmp_path):
    sweep = Sweep(base={**TINY, "scale": 0.3, "t_end": 2.0, "order_step_sizes": [0.04, 0.02, 0.01]},
                  reductions=("order",))
    (row,) = run_sweep(sweep, tmp_path, executor="serial").rows
    assert 0.9 < row["order"] < 1.1 and row["order_stderr"] < 0.05
    with pytest.raises(ValueError, match="order_step_sizes must divide t_end = 2 into whole steps, got 0.03"):
        Sweep(base={**TINY, "t_end": 2.0, "order_step_sizes": [0.04, 0.03]}, reductions=("order",))


def test_every_field_has_a_valid_default_and_every_reduction_names_its_columns():
    config = {name: field.default for name, field in FIELDS.items()}
    assert {name: field.check(config[name], name) for name, field in FIELDS.items()} == config
    assert all(field.help for field in FIELDS.values())
    config["rank"] = 2
    for name, reduction in REDUCTIONS.items():
        assert reduction.columns(config), name


# --------------------------------------------------------------------------------------------------
# executors: the same table, number for number
# --------------------------------------------------------------------------------------------------

def test_local_processes_give_the_serial_table(tmp_path):
    sweep = Sweep(base={**TINY, "problem": "sensing", "n_measurements": 40}, grid={"scale": [1e-3, 1e-1]},
                  replicates=3, reductions=("recovery_error", "time_to_eps", "nfev"))
    serial = run_sweep(sweep, tmp_path / "serial", executor="serial")
    local = run_sweep(sweep, tmp_path / "local", workers=2)
    assert local.computed == 6 and local.csv(timing=False) == serial.csv(timing=False)
    assert local.csv() != serial.csv()  # wall_time, the one timing column, is left out above
    assert TIMING_COLUMNS == ("wall_time",)


def test_a_dask_local_cluster_gives_the_serial_table(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    sweep = Sweep(base={**TINY, "t_end": 8.0}, grid={"scale": [1e-3, 1e-2, 1e-1], "condition": [1.0, 2.0, 4.0, 8.0]},
                  replicates=4, reductions=("recovery_error", "final_loss", "nfev"))
    assert len(sweep) == 48
    serial = run_sweep(sweep, tmp_path / "serial", executor="serial")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        on_dask = run_sweep(sweep, tmp_path / "dask", scheduler=cluster.scheduler_address)
    assert on_dask.computed == 48
    assert on_dask.csv(timing=False) == serial.csv(timing=False)
    for column in ("recovery_error", "final_loss", "nfev"):
        np.testing.assert_array_equal(on_dask.column(column), serial.column(column))


def test_executor_arguments_are_checked(tmp_path):
    sweep = Sweep(base=TINY)
    for kwargs, message in (({"executor": "threads"}, "executor must be one of"),
                            ({"executor": "dask"}, "scheduler"),
                            ({"executor": "serial", "workers": 2}, "workers applies to executor 'processes'"),
                            ({"workers": 0}, "workers must be an integer >= 1")):
        with pytest.raises(ValueError, match=message):
            run_sweep(sweep, tmp_path, **kwargs)


@pytest.fixture
def small_table(tmp_path):
    sweep = Sweep(base=TINY, grid={"scale": [1e-3, 1e-1], "condition": [1.0, 2.0, 3.0]}, replicates=2)
    return run_sweep(sweep, tmp_path, executor="serial")


def test_phase_diagram_reduces_the_replicates_of_each_cell(small_table):
    xs, ys, Z = phase_diagram(small_table, "condition", "scale", "nfev", reduce=np.mean)
    assert xs.tolist() == [1.0, 2.0, 3.0] and ys.tolist() == [1e-3, 1e-1] and Z.shape == (2, 3)
    assert Z[1, 2] == np.mean(small_table.column("nfev")[10:12])
    with pytest.raises(ValueError, match="no column 'recovery'"):
        phase_diagram(small_table, "condition", "scale", "recovery")


def test_the_table_as_a_pandas_dataframe(small_table):
    pd = pytest.importorskip("pandas")
    frame = small_table.to_pandas()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == list(small_table.columns) and len(frame) == 12
    np.testing.assert_array_equal(frame["recovery_error"].to_numpy(), small_table.column("recovery_error"))


def test_a_gd_step_size_that_does_not_divide_t_end_is_refused_before_any_run():
    with pytest.raises(ValueError, match=r"run 1 \(step_size = 0.3, replicate 0\): step_size must divide t_end = 1"):
        Sweep(base={**TINY, "dynamics": "gd", "t_end": 1.0}, grid={"step_size": [0.25, 0.3]})


def test_a_missing_unreadable_or_malformed_config_file_is_named(tmp_path):
    folder = tmp_path / "a_folder.toml"
    folder.mkdir()
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"[base]\nm = \xff\xfe\n")
    for path, message in ((tmp_path / "missing.toml", "missing.toml: no such file"),
                          (folder, "a_folder.toml: is a folder, not a file"),
                          (binary, "binary.toml: not a UTF-8 text file (byte 11 is 0xff)")):
        with pytest.raises((OSError, ValueError), match=re.escape(message)):
            load_sweep(path)
    if os.path.exists("/dev/null"):  # a device could block a reader for ever: refused, not read
        with pytest.raises(ValueError, match="config /dev/null: is not a regular file"):
            load_sweep("/dev/null")


# --------------------------------------------------------------------------------------------------
# run files: only the fields that apply, checksummed; corrupt ones named, moved aside and recomputed
# --------------------------------------------------------------------------------------------------

def _record(out, row):
    return json.loads((out / "runs" / f"{row['run_id']}.json").read_text())


def test_run_files_hold_only_the_fields_that_apply_and_reproduce_their_run(tmp_path):
    sweep = Sweep(base={**TINY, "t_end": 4.0, "step_size": 0.01, "save_every": 100},
                  zipped=[{"dynamics": ["gf", "gd", "gd", "pgf_additive"], "rho": [0.0, 0.0, 0.05, 0.05]}],
                  reductions=("recovery_error", "nfev"))
    table = run_sweep(sweep, tmp_path, executor="serial")
    gf, gd, perturbed_gd, pgf = (_record(tmp_path, row)["config"] for row in table.rows)
    gd_fields, solver = {"step_size", "variant", "save_every"}, {"method", "rtol", "atol"}
    perturbation = {"rho", "xi0", "perturbation_interval", "perturbation_norm", "perturbation_seed"}
    other = {"n_measurements", "observed", "noise", "eps", "fraction", "order_step_sizes"}
    assert set(FIELDS) - set(gf) == gd_fields | perturbation | other
    assert set(FIELDS) - set(gd) == solver | perturbation | other
    assert set(FIELDS) - set(perturbed_gd) == solver | other
    assert set(FIELDS) - set(pgf) == gd_fields | {"perturbation_norm"} | other  # additive: always fro
    for stored, row in zip((gf, gd, perturbed_gd, pgf), table.rows):
        assert run_id(stored) == row["run_id"]  # the id is the hash of what the file holds
        again = run_one(stored)
        assert (again["status"], again["recovery_error"], again["nfev"]) == \
            (row["status"], row["recovery_error"], row["nfev"])
    assert table.rows[2]["recovery_error"] != table.rows[1]["recovery_error"]  # the perturbation acts


def test_runs_that_differ_only_in_fields_that_do_not_apply_are_one_run(tmp_path):
    seeds = {"problem_seed": 3, "init_seed": 4}
    sweep = Sweep(base={**TINY, **seeds}, grid={"dynamics": ["gf", "gd"], "step_size": [0.01, 0.02]},
                  reductions=("recovery_error",))
    ids = [r.run_id for r in sweep.runs()]
    assert ids[0] == ids[1] and len(set(ids)) == 3  # GF has no step size: one run, two rows
    table = run_sweep(sweep, tmp_path, executor="serial")
    assert len(run_files(tmp_path)) == 3 and table.rows[0]["recovery_error"] == table.rows[1]["recovery_error"]
    assert table.rows[2]["recovery_error"] != table.rows[3]["recovery_error"]


CORRUPTIONS = {
    "garbage": lambda text: b"\x00\x9f\xffgarbage\x13" * 20,
    "truncated": lambda text: text.encode()[:len(text) // 2],
    "empty": lambda text: b"",
    "empty object": lambda text: b"{}",
    "edited number": None,  # one digit of the stored recovery error changed
    "another run's file": None,
}


def _corrupt(path, kind, other):
    text = path.read_text()
    if kind == "edited number":
        record = json.loads(text)
        value = repr(record["row"]["recovery_error"])
        digit = next(i for i in range(2, len(value)) if value[i].isdigit())
        edited = value[:digit] + str((int(value[digit]) + 1) % 10) + value[digit + 1:]
        assert edited != value and edited in text.replace(value, edited)
        path.write_text(text.replace(value, edited))
    elif kind == "another run's file":
        path.write_bytes(other.read_bytes())
    else:
        path.write_bytes(CORRUPTIONS[kind](text))


def test_corrupt_run_files_are_named_moved_aside_and_recomputed(tmp_path):
    sweep = Sweep(base=TINY, grid={"scale": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 0.5]},
                  reductions=("recovery_error", "nfev"))
    reference = run_sweep(sweep, tmp_path / "serial", executor="serial")
    out = tmp_path / "out"
    run_sweep(sweep, out, executor="serial")
    paths = [out / "runs" / f"{row['run_id']}.json" for row in reference.rows]
    for i, kind in enumerate(CORRUPTIONS):
        _corrupt(paths[i], kind, paths[-1])
    resumed = run_sweep(sweep, out, executor="serial")
    assert (resumed.computed, resumed.reused) == (len(CORRUPTIONS), len(paths) - len(CORRUPTIONS))
    assert len(resumed.corrupt) == len(CORRUPTIONS)
    reasons = ("is not valid JSON", "is not valid JSON", "is empty", "is not a run record",
               "its checksum does not match its content", "holds another run's configuration")
    for path, note, reason in zip(paths, resumed.corrupt, reasons):
        assert note.startswith(f"run file {path} {reason}") and f"moved to {out / 'runs' / 'corrupt' / path.name}" in note
    assert sorted(os.listdir(out / "runs" / "corrupt")) == sorted(p.name for p in paths[:len(CORRUPTIONS)])
    # the table is the uninterrupted serial table, cell by cell, and every run file is sound again
    assert resumed.csv(timing=False) == reference.csv(timing=False)
    again = run_sweep(sweep, out, executor="serial")
    assert (again.computed, again.corrupt) == (0, ())
    # a second corruption of the same run is moved aside beside the first, not over it
    paths[0].write_text("{")
    assert run_sweep(sweep, out, executor="serial").computed == 1
    assert {paths[0].name[:-5] + ".1.json", paths[0].name} < set(os.listdir(out / "runs" / "corrupt"))
    assert (out / "runs" / "corrupt" / (paths[0].name[:-5] + ".1.json")).read_text() == "{"


def test_a_run_file_that_is_a_folder_is_moved_aside(tmp_path):
    sweep = Sweep(base=TINY, reductions=("nfev",))
    (tmp_path / "runs" / f"{sweep.runs()[0].run_id}.json").mkdir(parents=True)
    table = run_sweep(sweep, tmp_path, executor="serial")
    assert table.computed == 1 and "cannot be read (is a directory)" in table.corrupt[0]
    assert len(run_files(tmp_path)) == 1


# --------------------------------------------------------------------------------------------------
# killed workers: one rerun, then reported by name; the rest of the sweep goes on
# --------------------------------------------------------------------------------------------------

def _dies(log, victim, times, config):
    """run_one, except that the worker process running the run of scale ``victim`` dies, the first
    ``times`` times it runs it. Every execution leaves a file in ``log``. (Module level: it pickles
    to the worker processes by name.)"""
    executions = len([name for name in os.listdir(log) if name.startswith(f"{config['scale']!r}-")])
    with open(os.path.join(log, f"{config['scale']!r}-{uuid.uuid4().hex}"), "w"):
        pass
    if config["scale"] == victim and executions < times:
        os._exit(1)
    return run_one(config)


def _executions(log):
    return collections.Counter(name.rsplit("-", 1)[0] for name in os.listdir(log))


KILL_SWEEP = Sweep(base=TINY, grid={"scale": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]}, reductions=("recovery_error",))


def test_a_killed_worker_costs_one_rerun_not_the_sweep(tmp_path, monkeypatch):
    log = tmp_path / "log"
    log.mkdir()
    serial = run_sweep(KILL_SWEEP, tmp_path / "serial", executor="serial")
    monkeypatch.setattr(executors, "run_one", functools.partial(_dies, str(log), 1e-2, 1))
    table = run_sweep(KILL_SWEEP, tmp_path / "local", workers=2)
    assert _executions(log) == {repr(s): 2 if s == 1e-2 else 1 for s in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)}
    assert table.killed == () and table.computed == 6 and len(run_files(tmp_path / "local")) == 6
    assert table.csv(timing=False) == serial.csv(timing=False)


def test_a_run_killed_twice_is_reported_by_name_and_the_others_are_stored(tmp_path, monkeypatch):
    log = tmp_path / "log"
    log.mkdir()
    monkeypatch.setattr(executors, "run_one", functools.partial(_dies, str(log), 3e-2, 2))
    table = run_sweep(KILL_SWEEP, tmp_path, workers=2)
    assert table.killed == ("run 3 (scale = 0.03, replicate 0)",)
    assert _executions(log)["0.03"] == ATTEMPTS == 2
    row = table.rows[3]
    assert row["status"] == KILLED and np.isnan(row["recovery_error"]) and "BrokenProcessPool" in row["error"]
    assert table.computed == 5 and len(run_files(tmp_path)) == 5  # a killed run is not stored ...
    assert "killed" in (tmp_path / "table.csv").read_text().splitlines()[4]
    monkeypatch.undo()
    again = run_sweep(KILL_SWEEP, tmp_path, executor="serial")  # ... so the next call runs it
    assert (again.computed, again.reused, again.killed) == (1, 5, ()) and again.rows[3]["status"] == "ok"


def test_an_unreachable_dask_scheduler_is_named_at_once(tmp_path):
    pytest.importorskip("dask.distributed")
    with socket.socket() as sock:  # a port of this machine that nothing listens on
        sock.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=f"cannot reach the Dask scheduler at {address}: "):
        run_sweep(Sweep(base=TINY), tmp_path, scheduler=address)
    assert time.monotonic() - start < 5  # not Dask's 30 s connect timeout
    with pytest.raises(ValueError, match="scheduler 'nowhere' is not a Dask scheduler address"):
        run_sweep(Sweep(base=TINY), tmp_path, scheduler="nowhere")


# --------------------------------------------------------------------------------------------------
# a sweep started by a script: the __main__ guard
# --------------------------------------------------------------------------------------------------

SCRIPT = """\
from pgflow.analysis.sweeps import Sweep, run_sweep
sweep = Sweep(base={{"m": 6, "n": 5, "rank": 2, "width": 2, "t_end": 5.0}}, grid={{"scale": [1e-3, 1e-2]}})
{guard}print("rows", len(run_sweep(sweep, {out!r}, workers=2)))
"""


@pytest.mark.parametrize("guarded", [False, True])
def test_a_script_without_a_main_guard_is_told_what_to_add(tmp_path, guarded):
    script = tmp_path / "my_sweep.py"
    script.write_text(SCRIPT.format(guard='if __name__ == "__main__":\n    ' if guarded else "",
                                    out=str(tmp_path / "out")))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    if guarded:
        assert done.returncode == 0 and done.stdout == "rows 2\n", done.stderr
        return
    assert done.returncode == 1 and "BrokenProcessPool" not in done.stderr
    assert f'MainGuardError: {script}, line 3: a sweep on local processes must be started under ' \
           '`if __name__ == "__main__":`' in done.stderr
    assert not (tmp_path / "out").exists()  # refused before anything ran
