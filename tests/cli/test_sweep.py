"""``pgflow sweep``: the command, killed and resumed, its table, phase diagram and shipped example."""

import os
import signal
import subprocess
import sys
import time


from pgflow import cli
from pgflow.analysis.sweeps import FIELDS, REDUCTIONS, Sweep, load_sweep, phase_diagram, read_config, run_sweep
from pgflow.cli.sweep import config_path, plot_options

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = {"m": 8, "n": 8, "rank": 2, "width": 2, "condition": 2.0, "t_end": 10.0}


def run_files(out):
    """Stored runs (a kill during a write may leave a hidden temporary file: not a run)."""
    folder = os.path.join(out, "runs")
    return {name: os.stat(os.path.join(folder, name)) for name in os.listdir(folder)
            if name.endswith(".json") and not name.startswith(".")}



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
    assert main_sweep(config, out) == 0
    printed = capsys.readouterr().out
    assert f"{total} runs ({total - len(before)} computed, {len(before)} already stored), {total} ok" in printed
    after = run_files(out)
    assert len(after) == total
    for name, stat in before.items():  # not rewritten: same inode, same modification time
        assert (after[name].st_ino, after[name].st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    rows = (out / "table.csv").read_text().splitlines()[1:]
    ids = [row.rsplit(",", 1)[1] for row in rows]
    assert len(ids) == total and sorted(ids) == sorted(name[:-5] for name in after)


def main_sweep(config, out, *extra):
    return cli.main(["sweep", str(config), "--out", str(out), "--executor", "serial", *extra])


def test_the_command_writes_the_table_and_a_phase_diagram(tmp_path, capsys):
    config = tmp_path / "phase.toml"
    config.write_text('[sweep]\nreplicates = 2\n[base]\nproblem = "sensing"\nm = 6\nn = 6\nrank = 1\nwidth = 6\n'
                      't_end = 40.0\n[grid]\nmeasurements = [12, 30]\nscale = [1e-3, 0.3]\n'
                      f'[output]\nfolder = "{tmp_path / "out"}"\n'
                      '[plot]\nx = "measurements"\ny = "scale"\n')
    assert cli.main(["sweep", str(config), "--executor", "serial"]) == 0
    printed = capsys.readouterr()
    assert "8 runs (8 computed, 0 already stored), 8 ok, 0 failed" in printed.out
    assert "recovery_error, median over replicates:" in printed.out
    assert printed.err == ""  # no progress when not on a terminal
    assert (tmp_path / "out" / "phase_diagram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "out" / "table.csv").read_text().splitlines()
    assert len(table) == 9 and table[0].startswith("run,measurements,scale,replicate,problem_seed")


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
    assert len(sweep) == 90 and sweep.axis_fields == ("measurements", "scale")
    assert plot_options(config, sweep, "figure6")["value"] == "recovery_error"
    assert {r.config["problem"] for r in sweep.runs()} == {"sensing"}


def test_the_figure6_example_draws_its_phase_diagram(tmp_path, capsys):
    table = run_sweep(load_sweep(config_path("figure6")), tmp_path, workers=2)
    xs, ys, Z = phase_diagram(table, "measurements", "scale", "recovery_error")
    assert xs.tolist() == [12, 16, 24, 32, 48, 64] and ys.tolist() == [1e-4, 1e-3, 1e-2, 1e-1, 0.3]
    # recovery from few measurements needs a small start: error falls with p and rises with α
    assert Z[0, -1] < 1e-2 < 0.5 < Z[-1, 0] and Z[0, -1] < Z[-1, -1] and Z[0, -1] < Z[0, 0]
    assert cli.main(["sweep", "figure6", "--out", str(tmp_path)]) == 0  # every run stored: only draws
    assert "90 runs (0 computed, 90 already stored), 90 ok" in capsys.readouterr().out
    assert (tmp_path / "phase_diagram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


