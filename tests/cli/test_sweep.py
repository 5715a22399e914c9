"""``pgflow sweep``: the command, killed and resumed, its table, phase diagram and shipped example."""

import csv
import functools
import io
import os
import signal
import subprocess
import sys
import time

import dying_runs
import pytest

from pgflow import cli
from pgflow.analysis.sweeps import (FIELDS, REDUCTIONS, TIMING_COLUMNS, Sweep, executors, load_sweep, phase_diagram,
                                    read_config, run_sweep)
from pgflow.cli.sweep import config_path, plot_options
from pgflow.flows import files

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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



KILL_CONFIG = """\
[sweep]
seed = 5
replicates = 4
reductions = ["recovery_error", "nfev"]

[base]
m = 8
n = 8
rank = 2
width = 2
dynamics = "gd"
step_size = 0.005
t_end = 30.0
save_every = 1000

[grid]
scale = [1e-3, 1e-2, 1e-1]
condition = [1.0, 2.0]
"""

# `pgflow sweep` from the source tree (the package need not be installed)
COMMAND = "import sys; from pgflow import cli; sys.exit(cli.main(sys.argv[1:]))"


@pytest.mark.slow  # 16 s: a sweep process killed mid-run and resumed
def test_a_sweep_killed_halfway_resumes_without_recomputing(tmp_path, capsys):
    config, out = tmp_path / "kill.toml", tmp_path / "out"
    config.write_text(KILL_CONFIG)
    total = len(load_sweep(config))
    proc = subprocess.Popen([sys.executable, "-c", COMMAND, "sweep", str(config), "--out", str(out), "--workers", "2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "runs").is_dir() and len(run_files(out)) >= total // 3:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the sweep finished before it could be killed: make its runs longer"
    finally:  # the whole session: the sweep, its forkserver and its workers, at once
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    before = run_files(out)
    assert total // 3 <= len(before) < total
    # what a kill in the middle of a write leaves (the kill above may or may not have left one)
    for folder in (out, out / "runs"):
        (folder / f".tmp-{files._HOST}-{proc.pid}-killed00.json").write_text('{"run_id": "3f')
    assert main_sweep(config, out) == 0
    printed = capsys.readouterr().out
    assert f"{total} runs ({total - len(before)} computed, {len(before)} already stored), {total} ok" in printed
    after = run_files(out)
    assert len(after) == total
    for name, stat in before.items():  # not rewritten: same inode, size, modification and change times
        assert after[name] == stat
    rows = (out / "table.csv").read_text().splitlines()[1:]
    ids = [row.rsplit(",", 1)[1] for row in rows]
    assert len(ids) == total and sorted(ids) == sorted(name[:-5] for name in after)
    assert not [p for p in out.rglob(".tmp-*")]  # the killed writers' temporary files are gone
    # the table of the killed and resumed sweep is the uninterrupted serial one, cell by cell
    serial = run_sweep(load_sweep(config), tmp_path / "serial", executor="serial")
    assert table_csv(out) == serial.csv(timing=False)


def table_csv(out):
    """table.csv without its timing column."""
    return _without_timing((out / "table.csv").read_text())


def main_sweep(config, out, *extra):
    return cli.main(["sweep", str(config), "--out", str(out), "--executor", "serial", *extra])


def test_the_command_writes_the_table_and_a_phase_diagram(tmp_path, capsys):
    config = tmp_path / "phase.toml"
    config.write_text('[sweep]\nreplicates = 2\n[base]\nproblem = "sensing"\nm = 6\nn = 6\nrank = 1\nwidth = 6\n'
                      't_end = 40.0\n[grid]\nn_measurements = [12, 30]\nscale = [1e-3, 0.3]\n'
                      f'[output]\nfolder = "{tmp_path / "out"}"\n'
                      '[plot]\nx = "n_measurements"\ny = "scale"\n')
    assert cli.main(["sweep", str(config), "--executor", "serial"]) == 0
    printed = capsys.readouterr()
    assert "8 runs (8 computed, 0 already stored), 8 ok, 0 failed" in printed.out
    assert "recovery_error, median over replicates:" in printed.out
    assert printed.err == ""  # no progress when not on a terminal
    assert (tmp_path / "out" / "phase_diagram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "out" / "table.csv").read_text().splitlines()
    assert len(table) == 9 and table[0].startswith("run,n_measurements,scale,replicate,problem_seed")


def test_the_command_reports_bad_configurations_without_a_traceback(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text('[grid]\nscale = [1e-3]\n[[zip]]\nm = [8, 10]\nn = [8]\n')
    assert cli.main(["sweep", str(config)]) == 2
    assert "zip[0]: zipped fields must have the same length, got m has 2, n has 1" in capsys.readouterr().err


def test_the_listed_fields_are_a_valid_config_of_the_defaults(tmp_path, capsys):
    assert cli.main(["sweep", "--list-fields"]) == 0
    path = tmp_path / "defaults.toml"
    path.write_text(capsys.readouterr().out)
    sweep = load_sweep(path)
    assert sweep.base.keys() == FIELDS.keys() and set(sweep.reductions) == set(REDUCTIONS)
    assert cli.main(["sweep"]) == 2 and "give a CONFIG" in capsys.readouterr().err


def test_progress_shows_count_rate_and_eta_when_asked(tmp_path, capsys):
    run_sweep(Sweep(base=TINY, grid={"scale": [1e-3, 1e-2]}), tmp_path, executor="serial", progress=True)
    err = capsys.readouterr().err
    assert "2/2" in err and ("run/s" in err or "runs/s" in err)


def test_the_figure6_example_is_shipped_and_valid():
    path = config_path("figure6")
    assert os.path.exists(path)
    config = read_config(path)
    sweep = Sweep.from_config(config)
    assert len(sweep) == 90 and sweep.axis_fields == ("n_measurements", "scale")
    assert plot_options(config, sweep, "figure6")["value"] == "recovery_error"
    assert {r.config["problem"] for r in sweep.runs()} == {"sensing"}


@pytest.mark.slow  # 9 s: the shipped sweep_figure6.toml end to end
def test_the_figure6_example_draws_its_phase_diagram(tmp_path, capsys):
    table = run_sweep(load_sweep(config_path("figure6")), tmp_path, workers=2)
    xs, ys, Z = phase_diagram(table, "n_measurements", "scale", "recovery_error")
    assert xs.tolist() == [12, 16, 24, 32, 48, 64] and ys.tolist() == [1e-4, 1e-3, 1e-2, 1e-1, 0.3]
    # recovery from few measurements needs a small start: error falls with p and rises with α
    assert Z[0, -1] < 1e-2 < 0.5 < Z[-1, 0] and Z[0, -1] < Z[-1, -1] and Z[0, -1] < Z[0, 0]
    assert cli.main(["sweep", "figure6", "--out", str(tmp_path)]) == 0  # every run stored: only draws
    assert "90 runs (0 computed, 90 already stored), 90 ok" in capsys.readouterr().out
    assert (tmp_path / "phase_diagram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"




def test_list_fields_explains_every_field_and_reduction(capsys):
    assert cli.main(["sweep", "--list-fields"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 100 for line in lines)
    for name, field in FIELDS.items():
        (line,) = [line for line in lines if line.startswith(f"{name} = ")]
        assert line.split("  # ", 1)[1] == field.help[:len(line.split("  # ", 1)[1])]
    for name, reduction in REDUCTIONS.items():
        (line,) = [line for line in lines if line.startswith(f"#   {name} ")]
        assert reduction.help.startswith(line[4 + len(name):].strip())
    assert "# --- perturbation (dynamics pgf_residual, pgf_additive; gd when rho or xi0 > 0) ---" in lines


@pytest.mark.parametrize("argv, code, message", [
    (["{tmp}/missing.toml"], 2, "config {tmp}/missing.toml: no such file"),
    (["{tmp}"], 2, "config {tmp}: is a folder, not a file"),
    (["{tmp}/bad.toml"], 2, "config {tmp}/bad.toml: Expected '=' after a key in a key/value pair (at line 2"),
    (["{tmp}/ok.toml", "--workers", "0"], 2, "--workers must be an integer >= 1, got 0"),
    (["{tmp}/ok.toml", "--out", "{tmp}/bad.toml"], 2, "--out {tmp}/bad.toml: is a file, not a folder"),
    (["{tmp}/ok.toml", "--executor", "serial", "--scheduler", "tcp://127.0.0.1:1"], 2,
     "scheduler (a Dask scheduler's address) goes with executor 'dask', and only with it"),
    (["--print-config", "{tmp}/missing.toml"], 2, "config {tmp}/missing.toml: no such file"),
])
def test_bad_inputs_print_one_line_naming_the_file_or_option(tmp_path, capsys, monkeypatch, argv, code, message):
    monkeypatch.chdir(tmp_path)  # where the default output folder would go
    (tmp_path / "bad.toml").write_text("[base]\nm 8\n")
    (tmp_path / "ok.toml").write_text("[base]\nm = 8\n")
    assert cli.main(["sweep", *[a.format(tmp=tmp_path) for a in argv]]) == code
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("pgflow sweep: error: ") and err.count("\n") == 1
    assert message.format(tmp=tmp_path) in err and "Traceback" not in err
    assert not (tmp_path / "pgflow-output").exists()  # refused before any folder was made


def test_an_unreachable_scheduler_is_one_line_naming_the_option(tmp_path, capsys, monkeypatch):
    pytest.importorskip("dask.distributed")
    monkeypatch.chdir(tmp_path)  # the default output folder goes here
    (tmp_path / "ok.toml").write_text("[base]\nm = 8\n")
    assert cli.main(["sweep", str(tmp_path / "ok.toml"), "--scheduler", "tcp://127.0.0.1:1"]) == 1
    assert capsys.readouterr().err == ("pgflow sweep: error: --scheduler: cannot reach the Dask scheduler at "
                                       "tcp://127.0.0.1:1: Connection refused\n")


CORRUPT_CONFIG = '[base]\nm = 8\nn = 8\nt_end = 10.0\n[grid]\nscale = [1e-3, 1e-2, 1e-1]\n'


def test_the_command_names_corrupt_run_files_and_recomputes_them(tmp_path, capsys):
    config, out = tmp_path / "c.toml", tmp_path / "out"
    config.write_text(CORRUPT_CONFIG)
    assert main_sweep(config, out) == 0
    first = (out / "table.csv").read_text()
    names = [row.rsplit(",", 1)[1] + ".json" for row in first.splitlines()[1:]]  # in grid order
    assert sorted(names) == sorted(run_files(out))
    (out / "runs" / names[0]).write_text("")
    (out / "runs" / names[2]).write_bytes((out / "runs" / names[2]).read_bytes()[:-30])
    capsys.readouterr()
    assert main_sweep(config, out) == 0
    printed = capsys.readouterr().out.splitlines()
    corrupt = out / "runs" / "corrupt"
    assert printed[0] == (f"corrupt run file {out / 'runs' / names[0]} is empty: moved to {corrupt / names[0]}, "
                          "and the run computed again")
    assert printed[1].startswith(f"corrupt run file {out / 'runs' / names[2]} is not valid JSON")
    assert "3 runs (2 computed, 1 already stored), 3 ok, 0 failed" in printed[2]
    assert _without_timing(first) == table_csv(out)  # the same numbers, cell by cell


def _without_timing(text):
    rows = list(csv.reader(io.StringIO(text)))
    keep = [i for i, name in enumerate(rows[0]) if name not in TIMING_COLUMNS]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([[row[i] for i in keep] for row in rows])
    return buf.getvalue()


def test_the_command_reports_a_run_killed_twice_and_exits_1(tmp_path, capsys, monkeypatch):
    config, out = tmp_path / "c.toml", tmp_path / "out"
    config.write_text(CORRUPT_CONFIG)
    # from a module of its own: each new worker imports it, and this one imports all of pgflow.cli
    monkeypatch.setattr(executors, "run_one", functools.partial(dying_runs.always_dies, 1e-2))
    assert cli.main(["sweep", str(config), "--out", str(out), "--workers", "2"]) == 1
    printed, err = capsys.readouterr()
    assert "3 runs (2 computed, 0 already stored), 2 ok, 0 failed, 1 killed" in printed
    assert f"wrote: {out / 'table.csv'} and 2 run files in {out / 'runs'}" in printed
    assert err == ("pgflow sweep: error: 1 run(s) killed twice, not stored: run 1 (scale = 0.01, replicate 0) "
                   "(their worker process died: killed or out of memory); run the command again to retry them\n")
    monkeypatch.undo()
    assert main_sweep(config, out) == 0
    assert "3 runs (1 computed, 2 already stored), 3 ok, 0 failed" in capsys.readouterr().out


def test_the_printed_phase_diagram_explains_its_empty_cells():
    import numpy as np

    from pgflow.cli.sweep import _text_grid

    text = _text_grid([1, 2], [0.1], np.array([[0.5, np.nan]]), {"x": "n_measurements", "y": "scale",
                                                                   "value": "recovery_error"})
    assert "nan" not in text and "- : no finite recovery_error in the cell" in text
    assert "no finite" not in _text_grid([1], [0.1], np.array([[0.5]]), {"x": "a", "y": "b", "value": "c"})
